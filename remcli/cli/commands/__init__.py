"""One module per subcommand; each only parses arguments and calls the library."""
