import pytest

from cutpoint.registry import Registry, did_you_mean


class Unknown(ValueError):
    pass


def test_unknown_name_lists_the_valid_ones_and_the_closest():
    reg = Registry("widget", Unknown, hint="`widgets --list` lists them.")
    reg.register("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1 and reg.get("beta") is beta
    assert reg.available() == ["alpha", "beta"]
    assert reg.available(where=lambda e: e == 1) == ["alpha"]
    with pytest.raises(Unknown, match=r"Unknown widget 'alpah'\. Available: alpha, beta\. "
                                      r"Did you mean 'alpha'\? `widgets --list`"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 3)


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("zzz", ["alpha", "beta"]) == ""
    assert did_you_mean("bta", ["alpha", "beta"]) == " Did you mean 'beta'?"


def test_datasets_and_classifiers_share_the_vocabulary():
    from classical import pipelines
    from cutpoint import datasets
    from cutpoint.datasets.registry import DATASETS
    assert isinstance(DATASETS, Registry) and isinstance(pipelines.CLASSIFIERS, Registry)
    with pytest.raises(datasets.DatasetError,
                       match=r"^Unknown dataset 'mnst'\. Available: cifar10, cifar100, digits, "
                             r"fashion_mnist, folder, mnist, npz\. Did you mean 'mnist'\?$"):
        datasets.load("mnst")
    with pytest.raises(ValueError, match=r"^Unknown classifier 'knm'\. Available: logreg, "
                                         r"linear_svm, rbf_svm, random_forest, xgboost, knn\. "
                                         r"Did you mean 'knn'\? \(`python -m classical --list`"):
        pipelines.get("knm")
