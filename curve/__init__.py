"""The label-efficiency curve stage (`make curve`): see `curve.run`."""
