from ase import units

from mtcv_core.units import KB_EV_PER_K, kT_eV


def test_boltzmann_constant_is_ase_s():
    assert KB_EV_PER_K == float(units.kB)
    assert kT_eV(300.0) == float(units.kB) * 300.0
