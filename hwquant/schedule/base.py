"""The handshake-model protocol every component's timing model follows."""

__all__ = ["TimingModel"]


class TimingModel:
    """Cycle-level model of one streaming component's handshakes (no payloads).

    A model has ``inputs`` input streams and ``outputs`` output streams, in the order the
    component documents (``i_stream`` alone for most components). One clock cycle is
    evaluated in three phases, which mirror the rules every component obeys:

    1. :meth:`valid` -- each output's ``valid``. It depends on the model's state only: no
       component has a combinational path from any input to an output ``valid``.
    2. :meth:`ready` -- each input's ``ready``, given this cycle's input ``valid`` and output
       ``ready`` values (a component may look at both, combinationally).
    3. :meth:`tick` -- advance the state to the next cycle, given all four; a transfer happens
       on a stream where ``valid and ready``.

    Because outputs' ``valid`` never depend on inputs, a network of models is evaluated by
    computing every ``valid`` first, then every ``ready`` from the outputs towards the inputs
    (reverse topological order), then ticking every model.

    A model must be data-independent: the timing of every component depends only on the
    handshakes, never on payload values.
    """

    inputs: int = 1
    outputs: int = 1

    def valid(self) -> tuple:
        """``valid`` of each output stream this cycle (a tuple of bools)."""
        raise NotImplementedError

    def ready(self, in_valid: tuple, out_ready: tuple) -> tuple:
        """``ready`` of each input stream this cycle."""
        raise NotImplementedError

    def tick(self, in_valid: tuple, in_ready: tuple, out_valid: tuple, out_ready: tuple) -> None:
        """Advance one clock edge."""
        raise NotImplementedError
