"""remcli: remove the influence of corrupted training data from image classifiers.

The command line (`remcli corrupt | train | unlearn | evaluate | inspect`) is a thin shell over
this package. Import the pieces directly for use from Python:

    from remcli.data import load_dataset, corrupt
    from remcli.train import train
    from remcli.unlearning import unlearn
    from remcli.evaluation import evaluate
"""

__version__ = "0.1.0"
