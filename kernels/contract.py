"""The twin contract: the functions that both targets export, with identical parameters.

``nblstm.kernels.cpu`` and ``nblstm.kernels.cuda`` are twins, not layers: each facade's
``__all__`` is exactly ``TWIN_FUNCTIONS``, and every function takes the same parameters in
the same order on both (``tests/test_kernel_contract.py`` checks all of it). The caller
(``nblstm.ops``, ``nblstm.training``) picks a facade through the dispatcher and calls the
same names whatever the backend. Shapes, layouts and aliasing rules are documented on the
CPU functions (``kernels/cpu/lstm.py``, ``kernels/cpu/training.py``); the CUDA docstrings
refer to them.
"""

#: LSTM kernels (``cpu/lstm.py`` and ``cpu/projected_lstm.py``, ``cuda/lstm.py``).
LSTM_FUNCTIONS = (
    "lstm_gates_forward",
    "lstm_gates_backward",
    "lstm_sequence_forward",
    "lstm_sequence_backward",
    "lstm_sequence_inference",
    "lstm_projected_sequence_forward",
    "lstm_projected_sequence_backward",
    "lstm_peephole_sequence_forward",
    "lstm_peephole_sequence_backward",
    "dropout",
    "copy_time_steps",
    "gather_steps",
    "add_arrays",
    "linear_softmax",
    "reverse_axes_copy",
)

#: Training-helper kernels (``cpu/training.py``, ``cuda/training.py``).
TRAINING_FUNCTIONS = (
    "sgd_update",
    "sgd_momentum_update",
    "adam_update",
    "sum_of_squares",
    "scale_in_place",
    "softmax_cross_entropy_rows",
    "gather_rows",
)

#: Everything both facades export, in this order.
TWIN_FUNCTIONS = LSTM_FUNCTIONS + TRAINING_FUNCTIONS
