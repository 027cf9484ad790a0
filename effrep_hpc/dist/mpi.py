"""The MPI backend: a dynamic work queue over mpi4py in which rank 0 both computes and writes.

Design
------
Every rank calls ``run`` with the same ``items``, so only item *indices* travel from rank 0 to
the workers (small pickles). Results travel back through ``mpi4py.util.pkl5``: pickle protocol 5,
whose large buffers (numpy arrays) go as separate uppercase ``Send`` messages instead of being
copied into the pickle stream, with no 2 GiB message limit. All traffic runs on a duplicate of the
communicator, so it never matches messages of other code.

* Prefetch (double buffering): rank 0 keeps ``prefetch`` indices outstanding at every worker and
  answers each result with one new index. A worker computes one item while its next index
  already waits in its MPI receive queue, so it does not idle for a round trip to rank 0.
  Likewise a worker keeps up to ``prefetch`` results in flight (``isend``), so a large result
  that rank 0 has not received yet does not stop it from starting its next item.
* Rank 0 serves while it computes: if the MPI library grants at least MPI_THREAD_SERIALIZED
  (``MPI.Query_thread()``; mpi4py asks for MULTIPLE), a helper thread on rank 0 receives results
  and sends new indices while the main thread computes rank 0's own items. Only the helper thread
  calls MPI while it runs, hence SERIALIZED suffices. Results reach the main thread through a
  ``queue.Queue``: ``on_result`` and ``on_progress`` run only on the main thread, so HDF5 writers
  and progress bars need not be thread-safe. While the helper runs, the interpreter's GIL switch
  interval is lowered to 1 ms (restored afterwards), so Python-heavy compute on rank 0 delays the
  helper by at most that. Default prefetch here: 2. Results that arrive while rank 0 computes
  one of its own items are written after that item; with many ranks or long items, pass
  ``root_computes=False`` so rank 0 only serves and writes.
* Without that thread level, or with ``serve_thread=False``, rank 0 serves the queue between its
  own items. A result then waits up to one rank-0 item before it is answered, so the default
  prefetch is 3 (measured: with 2, equal-length items left the worker idle a third of the time).
* Idle waiting polls (``Iprobe`` and a sleep that grows from 20 us) instead of blocking, because
  MPICH and Open MPI busy-spin inside blocking calls and a spinning idle rank takes a core from the
  ranks it shares a node with. The sleep grows to 0.5 ms on rank 0, on a worker with results in
  flight (a large message moves only while its sender polls) and on one waiting for its first index,
  but to 5 ms on a worker with nothing to do: it is idle because rank 0 is behind (or done), and 31
  idle workers polling every 0.5 ms took more than one of two cores from rank 0's writer (32 ranks on
  2 cores, ``benchmarks/queue_sim.py``: a tile write took 3.2 ms instead of 1.4). With prefetch a
  busy worker's next index is already there when it finishes, so the longer sleep costs no throughput.
* Termination: after the last result has gone through ``on_result`` on rank 0, rank 0 sends each
  worker a stop message; so ``run`` returns on every rank only once all results are delivered.
  No collective runs per item; ``run`` makes one ``allgather`` of ``len(items)`` up front, so ranks
  that disagree about the work list fail at once instead of deadlocking.
* The tail: an index prefetched by a busy worker waits for that worker, so the last items can
  finish up to ``prefetch - 1`` item durations after the others. Results arrive in completion
  order, not item order.

Failures
--------
If ``compute`` raises on a worker, the worker sends rank 0 its traceback and re-raises the
original exception; rank 0 raises :class:`WorkerError` naming that rank and item. Launch as
``mpiexec -n N python -m mpi4py script.py``: then an uncaught exception on any rank calls
``MPI_Abort`` and ends the whole job with a non-zero status. Launched as plain
``python script.py`` (or as a console script, which cannot take ``-m mpi4py``), a rank that dies
can leave the others waiting for messages that never come; wrap the entry point in
:func:`abort_on_error` to get the same behaviour there. A rank killed outright (SIGKILL, a
segfault) is noticed by the launcher (MPICH's hydra, ``srun --kill-on-bad-exit``), which ends the rest.

MPI_Abort leaves MPICH's shared-memory segment in ``/dev/shm`` behind, so it is kept for failures on
one rank (bugs, errors in the middle of the work). Failures every rank knows of, because the ranks
agreed on them in a handshake (:func:`effrep_hpc.dist.base.guarded`, over :func:`world_allgather`
before any backend exists), end with :func:`finalize` and a plain exit code instead.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Iterator

from effrep_hpc.dist import env as envmod
from effrep_hpc.dist.base import Backend, Compute, OnProgress, OnResult, WorkerError, run_serial

_TAG_WORK = 101
_TAG_STOP = 102
_TAG_RESULT = 103
_TAG_ERROR = 104

_FIRST_SLEEP = 2e-5
_MAX_SLEEP = 5e-4
_MEET_POLL_S = 0.02  # PollingWorld: a rank waiting for the others between long steps
_IDLE_MAX_SLEEP = 5e-3  # a worker with nothing to compute and nothing in flight (see the module docstring)
_GIL_SWITCH_S = 1e-3
# See the module docstring for why the inline queue needs one more.
_PREFETCH_THREADED = 2
_PREFETCH_INLINE = 3
# A traceback must fit in one eager message, so that sending it cannot block on rank 0.
_MAX_TRACEBACK_CHARS = 8000


def _job_running() -> bool:
    MPI = sys.modules.get("mpi4py.MPI")  # never import it here: that would initialise MPI
    return MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1


def launched_world() -> Any:
    """COMM_WORLD when an MPI launcher started this process among several ranks (MPI is initialised if
    needed), else None. Decided from the environment first: MPI_Init outside a launcher can be slow."""
    MPI: Any = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized():
        size = envmod.mpi_world_size()
        if not (envmod.mpi_launched() and (size is None or size > 1) and envmod.mpi4py_available()):
            return None
        from mpi4py import MPI  # initialises MPI, as creating the backend would next
    if MPI.Is_finalized() or MPI.COMM_WORLD.Get_size() == 1:
        return None
    return MPI.COMM_WORLD


def world_allgather(obj: object) -> list[object]:
    """Every rank's ``obj`` over COMM_WORLD of an MPI launch with several ranks; ``[obj]`` otherwise."""
    world = launched_world()
    return [obj] if world is None else world.allgather(obj)


def world_rank() -> int:
    """This process's rank in COMM_WORLD of an MPI launch (0 otherwise)."""
    world = launched_world()
    return 0 if world is None else int(world.Get_rank())


def finalize() -> None:
    """End MPI cleanly in an MPI-launched process, so a non-zero exit is not turned into MPI_Abort.

    ``python -m mpi4py`` aborts at exit when the exit code is not 0; after MPI_Finalize it cannot, and
    MPICH removes its ``/dev/shm`` segment. Every rank must call this (MPI_Finalize is collective).
    """
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and envmod.mpi_launched() and MPI.Is_initialized() and not MPI.Is_finalized():
        sys.stdout.flush()
        sys.stderr.flush()
        MPI.Finalize()


def abort_job(code: int) -> None:
    """MPI_Abort the whole job with ``code`` when MPI runs with several ranks; otherwise do nothing."""
    if not _job_running():
        return
    sys.stderr.flush()
    # MPI_Abort tears the launcher's I/O forwarding down at once; give it a moment to pass what this
    # rank printed on, or the user sees only its first line.
    time.sleep(0.5)
    sys.modules["mpi4py.MPI"].COMM_WORLD.Abort(code)


@contextlib.contextmanager
def abort_on_error() -> Iterator[None]:
    """Turn an exception escaping the block into MPI_Abort of the whole job (as ``python -m mpi4py`` does).

    Only acts when MPI is already initialised with more than one rank; otherwise the exception
    propagates unchanged. Meant for entry points such as console scripts that cannot be started
    with ``-m mpi4py``, so that one failing rank ends the job instead of hanging the others.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        if _job_running():
            traceback.print_exc()
            abort_job(1)
        raise


class _Backoff:
    """Sleep a little longer each time nothing happened; start short again after progress."""

    def __init__(self) -> None:
        self._delay = 0.0

    def reset(self) -> None:
        self._delay = 0.0

    def wait(self, cap: float = _MAX_SLEEP) -> None:
        time.sleep(self._delay)
        self._delay = min(cap, max(_FIRST_SLEEP, 2 * self._delay))


class _Failure:
    """Carried through the result queue to make the main thread raise ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Dispatcher:
    """Rank 0's side of the queue: hands indices to workers and receives their results.

    ``receive_later``: post non-blocking receives for results (the helper thread polls all the
    time, so they progress) rather than receiving each at once (inline serving: a posted receive
    would not progress while rank 0 computes, and the worker would wait for it).
    """

    def __init__(
        self,
        MPI: Any,
        comm: Any,
        rcomm: Any,
        total: int,
        prefetch: int,
        *,
        sink: Callable[[int, Any], None],
        receive_later: bool,
    ) -> None:
        self._MPI = MPI
        self._comm = comm
        self._rcomm = rcomm
        self._total = total
        self._prefetch = prefetch
        self._sink = sink
        self._receive_later = receive_later
        self._lock = threading.Lock()  # rank 0's main thread takes indices too
        self._next = 0
        self._sent = 0
        self._received = 0
        self._requests: list[Any] = []  # sends of indices and stops not yet complete
        self._incoming: list[Any] = []  # results being received

    def take(self) -> int | None:
        """The next index nobody has started, or None when all are handed out."""
        with self._lock:
            if self._next >= self._total:
                return None
            index = self._next
            self._next += 1
            return index

    @property
    def workers_done(self) -> bool:
        """True when every index is handed out and every worker's result has arrived."""
        return self._next >= self._total and self._received == self._sent

    def prime(self) -> None:
        """Give every worker ``prefetch`` indices, round-robin so small jobs still reach all of them."""
        for _ in range(self._prefetch):
            for worker in range(1, self._comm.Get_size()):
                if not self._give(worker):
                    return

    def _give(self, worker: int) -> bool:
        index = self.take()
        if index is None:
            return False
        self._requests.append(self._comm.isend(index, dest=worker, tag=_TAG_WORK))
        self._sent += 1
        return True

    def serve(self) -> int:
        """Handle every message that has arrived, without blocking; return how many there were."""
        MPI = self._MPI
        status = MPI.Status()
        handled = 0
        while True:
            message = self._rcomm.improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
            if message is None:
                break
            source, tag = status.Get_source(), status.Get_tag()
            handled += 1
            if tag == _TAG_RESULT:
                self._give(source)  # the worker finished an item: refill its buffer at once
                if self._receive_later:
                    self._incoming.append(message.irecv())
                else:
                    self._deliver(message.recv())
            elif tag == _TAG_ERROR:
                index, remote_traceback = message.recv()
                raise WorkerError(source, index, remote_traceback)
            else:
                raise RuntimeError(f"unexpected message tag {tag} from rank {source} in the work queue")
        if self._incoming:
            waiting = []
            for request in self._incoming:
                complete, payload = request.test()
                if not complete:
                    waiting.append(request)
                    continue
                handled += 1
                self._deliver(payload)
            self._incoming = waiting
        if self._requests:
            self._requests = [req for req in self._requests if not req.Test()]
        return handled

    def _deliver(self, payload: tuple[int, Any]) -> None:
        self._received += 1
        self._sink(*payload)

    def stop_workers(self) -> None:
        """Tell every worker that all results are delivered, and complete all sends."""
        for worker in range(1, self._comm.Get_size()):
            self._requests.append(self._comm.isend(None, dest=worker, tag=_TAG_STOP))
        self._MPI.Request.Waitall(self._requests)
        self._requests = []


def _serve_forever(dispatcher: _Dispatcher, stop: threading.Event, inbox: queue.Queue) -> None:
    """Helper-thread body on rank 0: serve until workers are done, forwarding any failure."""
    backoff = _Backoff()
    try:
        while not stop.is_set() and not dispatcher.workers_done:
            if dispatcher.serve():
                backoff.reset()
            else:
                backoff.wait()
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
        inbox.put(_Failure(exc))


class MPIBackend(Backend):
    """Ranks of an MPI job sharing items through a dynamic queue; rank 0 computes and writes.

    ``prefetch``: indices kept outstanding per worker (>= 1; None: 2 with a serving thread, else 3).
    ``serve_thread``: serve the queue from a helper thread on rank 0 (None: when the MPI thread
    level allows it). ``comm``: the communicator to use (default ``MPI.COMM_WORLD``); it is
    duplicated here, which is collective: every rank must create the backend.
    ``root_computes``: rank 0 computes items too (False: it only serves the queue and writes).
    """

    kind = "mpi"

    def __init__(
        self,
        *,
        prefetch: int | None = None,
        serve_thread: bool | None = None,
        root_computes: bool = True,
        comm: Any = None,
    ) -> None:
        bad_int = isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1
        if prefetch is not None and bad_int:
            raise ValueError(f"prefetch must be an integer >= 1 (or None for the default), got {prefetch!r}")
        try:
            from mpi4py import MPI
            from mpi4py.util import pkl5
        except ImportError as exc:
            raise ImportError(
                "the 'mpi' backend needs mpi4py: pip install 'effrep-hpc[mpi]' (or mpi4py)"
            ) from exc
        level_ok = MPI.Query_thread() >= MPI.THREAD_SERIALIZED
        if serve_thread and not level_ok:
            raise ValueError(
                "serve_thread=True needs MPI_THREAD_SERIALIZED or better, but MPI provides "
                f"level {MPI.Query_thread()}; use serve_thread=None or False"
            )
        self._MPI = MPI
        self._comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self._rcomm = pkl5.Intracomm(self._comm)
        self._threaded = level_ok if serve_thread is None else serve_thread
        if prefetch is None:
            prefetch = _PREFETCH_THREADED if self._threaded else _PREFETCH_INLINE
        self._prefetch = prefetch
        self._root_computes = root_computes
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()
        self.is_writer = self.rank == 0

    @property
    def serve_thread(self) -> bool:
        """Whether rank 0 serves the queue from a helper thread."""
        return self._threaded

    def broadcast(self, obj: object) -> object:
        """Return rank 0's ``obj`` on every rank (large arrays travel as buffers)."""
        return self._rcomm.bcast(obj, root=0)

    def allgather(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order."""
        return list(self._rcomm.allgather(obj))

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        self._comm.Barrier()

    def close(self) -> None:
        """Free the duplicated communicator (collective)."""
        if self._comm != self._MPI.COMM_NULL:
            self._comm.Free()

    def run(
        self,
        items: Iterable[object],
        compute: Compute,
        on_result: OnResult,
        *,
        on_progress: OnProgress | None = None,
    ) -> None:
        """Compute all items on all ranks (rank 0 included); deliver results on rank 0 as they arrive."""
        items = list(items)
        counts = self._comm.allgather(len(items))
        if len(set(counts)) != 1:
            raise ValueError(
                f"ranks called run with different numbers of items {counts}; every rank must "
                "pass the same items (only their indices are sent)"
            )
        if not items:
            return
        if self.size == 1:
            run_serial(items, compute, on_result, on_progress)
        elif self.rank == 0:
            self._lead(items, compute, on_result, on_progress)
        else:
            self._work(items, compute)

    def _lead(
        self, items: list[object], compute: Compute, on_result: OnResult, on_progress: OnProgress | None
    ) -> None:
        total = len(items)
        done = 0

        def deliver(index: int, result: object) -> None:
            nonlocal done
            on_result(items[index], result)
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        if self._threaded:
            inbox: queue.Queue = queue.Queue()
            dispatcher = _Dispatcher(
                self._MPI, self._comm, self._rcomm, total, self._prefetch,
                sink=lambda i, r: inbox.put((i, r)), receive_later=True,
            )
            dispatcher.prime()
            stop = threading.Event()
            helper = threading.Thread(
                target=_serve_forever, args=(dispatcher, stop, inbox), name="effrep-mpi-serve", daemon=True
            )
            switch_interval = sys.getswitchinterval()
            # While rank 0 runs Python-heavy compute, the helper waits this long for the GIL.
            sys.setswitchinterval(min(switch_interval, _GIL_SWITCH_S))
            helper.start()

            def take_inbox(block: bool) -> bool:
                try:
                    entry = inbox.get(block=block)
                except queue.Empty:
                    return False
                if isinstance(entry, _Failure):
                    raise entry.exc
                deliver(*entry)
                return True

            try:
                while self._root_computes and (index := dispatcher.take()) is not None:
                    deliver(index, compute(items[index]))
                    while take_inbox(block=False):
                        pass
                while done < total:
                    take_inbox(block=True)
            finally:
                stop.set()
                helper.join()
                sys.setswitchinterval(switch_interval)
        else:
            dispatcher = _Dispatcher(
                self._MPI, self._comm, self._rcomm, total, self._prefetch, sink=deliver, receive_later=False
            )
            dispatcher.prime()
            backoff = _Backoff()
            while done < total:
                handled = dispatcher.serve()
                index = dispatcher.take() if self._root_computes else None
                if index is not None:
                    deliver(index, compute(items[index]))
                if handled or index is not None:
                    backoff.reset()
                else:
                    backoff.wait()
        dispatcher.stop_workers()

    def _work(self, items: list[object], compute: Compute) -> None:
        MPI = self._MPI
        status = MPI.Status()
        backoff = _Backoff()
        # Results still travelling to rank 0. A large one completes only when rank 0 receives
        # it, which it may do only after its own item; allowing a few in flight keeps this
        # worker computing meanwhile.
        in_flight: list[Any] = []
        started = False  # the first index is on its way: wait for it with short sleeps
        while True:
            if in_flight:
                in_flight = [req for req in in_flight if not req.test()[0]]
            if not self._comm.Iprobe(source=0, tag=MPI.ANY_TAG, status=status):
                backoff.wait(_IDLE_MAX_SLEEP if started and not in_flight else _MAX_SLEEP)
                continue
            backoff.reset()
            started = True
            tag = status.Get_tag()
            index = self._comm.recv(source=0, tag=tag)
            if tag == _TAG_STOP:
                break
            try:
                result = compute(items[index])
                in_flight.append(self._rcomm.isend((index, result), dest=0, tag=_TAG_RESULT))
                while len(in_flight) > self._prefetch:
                    in_flight.pop(0).wait()
            except Exception:
                self._report(index, traceback.format_exc())
                raise
        for request in in_flight:
            request.wait()

    def _report(self, index: int, text: str) -> None:
        """Tell rank 0 which item failed and why, so the writer's log names the cause."""
        if len(text) > _MAX_TRACEBACK_CHARS:
            text = "...\n" + text[-_MAX_TRACEBACK_CHARS:]
        self._rcomm.send((index, text), dest=0, tag=_TAG_ERROR)


class PollingWorld:
    """This process among the ranks of an MPI launch (alone: rank 0 of 1), with collectives whose waits poll instead of spin.

    For a job whose ranks meet now and then between long, uneven steps (`effrep study`): an idle rank polls
    every 20 ms instead of taking a core inside a blocking MPI call.
    """

    def __init__(self) -> None:
        world = launched_world()
        self.comm = world.Dup() if world is not None else None
        self.rank = int(self.comm.Get_rank()) if self.comm is not None else 0
        self.size = int(self.comm.Get_size()) if self.comm is not None else 1

    def _meet(self) -> None:
        """Wait for every rank, polling (MPI implementations busy-spin inside blocking calls)."""
        assert self.comm is not None
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(_MEET_POLL_S)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank."""
        if self.comm is None:
            return [obj]
        self._meet()
        return list(self.comm.allgather(obj))

    def bcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.comm is None:
            return obj
        self._meet()
        return self.comm.bcast(obj, root=0)

    def close(self) -> None:
        """Free the duplicated communicator."""
        if self.comm is not None:
            self.comm.Free()
            self.comm = None
