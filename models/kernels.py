"""The official per-block kernel layouts of UniRepLKNet, by depth configuration (the architecture and the variant
registry both read them; a module of its own keeps them from importing each other)."""

from __future__ import annotations

from collections.abc import Sequence

from unirep_errors import ModelError

KernelSizes = tuple[tuple[int, ...], ...]

_A_F_P_KERNELS: KernelSizes = ((3, 3), (13, 13), (13,) * 6, (13, 13))
_N_KERNELS: KernelSizes = ((3, 3), (13, 13), (13,) * 8, (13, 13))
_T_KERNELS: KernelSizes = ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13))
_S_B_L_XL_KERNELS: KernelSizes = ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13))
_DEFAULT_KERNELS_BY_DEPTHS: dict[tuple[int, ...], KernelSizes] = {
    (2, 2, 6, 2): _A_F_P_KERNELS,
    (2, 2, 8, 2): _N_KERNELS,
    (3, 3, 18, 3): _T_KERNELS,
    (3, 3, 27, 3): _S_B_L_XL_KERNELS,
}


def default_kernel_sizes(depths: Sequence[int]) -> KernelSizes:
    """The official per-block kernel layout for a depth configuration; custom depths need explicit kernel sizes."""
    try:
        return _DEFAULT_KERNELS_BY_DEPTHS[tuple(depths)]
    except KeyError:
        raise ModelError(
            f"no default kernel layout for depths {tuple(depths)}; pass kernel_sizes (one tuple per stage)"
        ) from None
