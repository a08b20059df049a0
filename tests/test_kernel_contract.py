"""The twin contract: ``nblstm.kernels.cpu`` and ``nblstm.kernels.cuda`` export exactly
``contract.TWIN_FUNCTIONS``, each with the same parameters in the same order."""
import inspect
import types

import pytest

from _backends import skip_unless_cuda
from nblstm.kernels import contract, cpu


@pytest.fixture(scope="module")
def cuda_facade():
    skip_unless_cuda()
    from nblstm.kernels import cuda
    return cuda


def _parameters(function) -> list[tuple[str, object]]:
    """Names and defaults of a function's parameters (of the Python source of a jitted one)."""
    python_function = getattr(function, "py_func", function)
    return [(p.name, p.default) for p in inspect.signature(python_function).parameters.values()]


def _public_functions(module) -> set[str]:
    """Public callables a facade holds, submodules aside."""
    return {name for name, value in vars(module).items()
            if not name.startswith("_") and callable(value)
            and not isinstance(value, (types.ModuleType, type))}


def test_the_contract_lists_each_function_once():
    assert len(set(contract.TWIN_FUNCTIONS)) == len(contract.TWIN_FUNCTIONS)
    assert set(contract.LSTM_FUNCTIONS) | set(contract.TRAINING_FUNCTIONS) == set(
        contract.TWIN_FUNCTIONS)


def test_the_cpu_facade_exports_exactly_the_contract():
    assert list(cpu.__all__) == list(contract.TWIN_FUNCTIONS)
    assert _public_functions(cpu) == set(contract.TWIN_FUNCTIONS)


def test_the_cuda_facade_exports_exactly_the_contract(cuda_facade):
    assert list(cuda_facade.__all__) == list(contract.TWIN_FUNCTIONS)
    assert _public_functions(cuda_facade) == set(contract.TWIN_FUNCTIONS)


@pytest.mark.parametrize("name", contract.TWIN_FUNCTIONS)
def test_both_targets_take_the_same_parameters(cuda_facade, name):
    cpu_function, cuda_function = getattr(cpu, name), getattr(cuda_facade, name)
    assert _parameters(cpu_function) == _parameters(cuda_function), name
    assert (inspect.getdoc(getattr(cpu_function, "py_func", cpu_function))
            and inspect.getdoc(cuda_function)), f"{name} needs a docstring on both targets"
