"""HW4 — a submission that does not parse."""
import torch


def finite_difference_filters():
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0, 1, 1] = -1
    return w


def avgpool_as_conv(C, k)
    return {"weight": torch.ones(C, C, k, k), "stride": k}
