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
