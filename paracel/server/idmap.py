"""A vectorised hash map from 64-bit row ids to dense row numbers.

A server's row table (:mod:`paracel.server.rowtable`) keeps its rows in
dense arrays, row ``r`` belonging to the ``r``-th distinct id it was given.
:class:`IdMap` finds the rows of a whole batch of ids at once: open
addressing with linear probing over one array of 16-byte slots (the id and
its row side by side, so a probe is one random memory access), each probe
round a handful of numpy operations on the ids still unresolved. No Python
code runs per id and no Python object is made per id.

A slot's home is a multiplicative hash of its id (:meth:`IdMap._home`),
unrelated to :func:`paracel.partition.mix64`, which places ids on servers.
The table keeps at most :data:`MAX_LOAD` of its slots full, doubling (and
re-placing every id) when a batch would fill more, so inserting costs
amortised O(1) per id. Ids are never removed: a map only grows, or is
rebuilt from the ids to keep.

Inserting a batch needs no sort, repeated ids included: each new id claims
the first empty slot on its probe path by writing its position there; of
several claims on one slot the last write wins, and the losers look at the
slot again in the next round, where a loser with the winner's id takes the
winner's row and any other moves on.
"""

import numpy as np

#: The row field of an empty slot: -1 as an int64.
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)

#: Most slots in use before the table doubles. At 1/2 a lookup probes 1.5
#: slots on average for an id present and 2.5 for one absent.
MAX_LOAD = 0.5

MIN_SLOTS = 1024

#: Below this many ids left to find, a probe round reads a block of
#: :data:`BLOCK` slots per id: rounds on few ids cost numpy's fixed costs,
#: and clusters take tens of them one slot at a time.
_FEW = 2048
BLOCK = 16
_STEPS = np.arange(1, BLOCK + 1)

#: 2**64 divided by the golden ratio (Knuth's multiplicative hashing).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class IdMap:
    """Distinct 64-bit ids, each with its row number ``0 .. len - 1``.

    Parameters
    ----------
    ids : numpy.ndarray of uint64, optional
        Distinct ids to start with; ``ids[r]`` gets row ``r``.
    """

    def __init__(self, ids=None):
        ids = np.empty(0, dtype=np.uint64) if ids is None else np.asarray(ids, np.uint64)
        self.size = ids.size
        self._ids = np.empty(max(ids.size, 16), dtype=np.uint64)
        self._ids[:ids.size] = ids
        self._allocate(_slots_for(ids.size))
        self._place(ids, np.arange(ids.size, dtype=np.uint64))

    def __len__(self):
        return self.size

    @property
    def ids(self):
        """The ids by row (a view, valid until the next insert)."""
        return self._ids[:self.size]

    @property
    def nbytes(self):
        """Bytes of the slots and of the ids by row."""
        return self._slots.nbytes + self._ids.nbytes

    def find(self, ids):
        """The row of each id, -1 for ids not in the map.

        Parameters
        ----------
        ids : numpy.ndarray of uint64
            Any order, repeats allowed.

        Returns
        -------
        numpy.ndarray of int64
        """
        # The first round, on every id, settles most of them: it is written
        # without index arrays. An empty slot's row field is EMPTY, -1 as an
        # int64, so an id that matches an empty slot's key field reads -1.
        slot = self._home(ids)
        key, row = self._records(slot)
        rows = row.view(np.int64).copy()
        going = row != EMPTY
        going &= key != ids
        todo = np.flatnonzero(going)
        rows[todo] = -1
        keys, slot = ids[todo], slot[todo]
        while todo.size > _FEW:
            slot = self._next(slot)
            key, row = self._records(slot)
            hit = key == keys
            rows[todo[hit]] = row[hit]
            going = row != EMPTY
            going &= ~hit
            todo, keys, slot = todo[going], keys[going], slot[going]
        while todo.size:  # the few left: a block of slots a round, not one
            stopped, slot, row = self._block(keys, slot)
            rows[todo[stopped]] = row[stopped]
            todo, keys, slot = todo[~stopped], keys[~stopped], slot[~stopped]
        return rows

    def insert(self, ids):
        """The row of each id, giving new rows to ids not yet in the map.

        Parameters
        ----------
        ids : numpy.ndarray of uint64
            Any order, repeats allowed.

        Returns
        -------
        numpy.ndarray of int64
            Rows; ids new to the map get rows ``len(self)`` (as it was
            before the call) onwards, one per distinct id.
        """
        if self.size + ids.size > MAX_LOAD * self._capacity:
            self._reserve(distinct(ids).size)  # repeated ids must not grow the table
        return self._place(ids, None)

    # -- slots ---------------------------------------------------------------

    def _allocate(self, count):
        self._slots = np.zeros((count, 2), dtype=np.uint64)
        self._slots[:, 1] = EMPTY
        self._flat = self._slots.view(np.dtype((np.void, 16))).reshape(count)
        self._capacity = count
        self._shift = np.uint64(64 - (count.bit_length() - 1))

    def _records(self, slot):
        """The key and row fields of ``slot``: one gather of 16-byte items
        (numpy's take on a void dtype; 2-d fancy indexing is ~8x slower)."""
        records = np.take(self._flat, slot).view(np.uint64).reshape(slot.size, 2)
        return records[:, 0], records[:, 1]

    def _block(self, keys, slot):
        """Probe the :data:`BLOCK` slots after ``slot`` for each key.

        Returns
        -------
        stopped : numpy.ndarray of bool
            Whether the key's probe ended in the block (the key, or an
            empty slot: absent).
        slot : numpy.ndarray of int64
            The last slot of the block (where the next block starts after).
        row : numpy.ndarray of int64
            The row there (-1 if absent; meaningless if not stopped).
        """
        span = slot[:, None] + _STEPS
        span &= self._capacity - 1
        records = np.take(self._flat, span).view(np.uint64).reshape(slot.size, BLOCK, 2)
        stop = records[:, :, 0] == keys[:, None]
        stop |= records[:, :, 1] == EMPTY
        first = stop.argmax(axis=1)
        each = np.arange(slot.size)
        stopped = stop[each, first]
        row = np.where(records[each, first, 0] == keys, records[each, first, 1], EMPTY)
        return stopped, span[:, -1], row.view(np.int64)

    def _home(self, ids):
        """Each id's first slot: the top bits of the id times 2**64 / golden
        ratio (two passes over the ids, against six for
        :func:`paracel.partition.mix64`)."""
        home = ids * _GOLDEN
        home >>= self._shift
        return home.view(np.int64)

    def _next(self, slot):
        slot += 1
        slot &= self._capacity - 1
        return slot

    def _reserve(self, new):
        """Grow (and re-place every id) so that ``new`` more ids fit."""
        wanted = self.size + new
        if wanted <= MAX_LOAD * self._capacity:
            return
        self._allocate(_slots_for(wanted))
        self._place(self.ids, np.arange(self.size, dtype=np.uint64))

    def _place(self, ids, rows):
        """Put ``ids`` in their slots (see the module docstring).

        ``rows`` gives each id's row when re-placing ids already in
        ``self.ids``; ``None`` looks each id up too and adds the new ones as
        rows ``self.size`` onwards. Returns each id's row.
        """
        found = np.empty(ids.size, dtype=np.int64)
        todo, keys, slot = np.arange(ids.size), ids, self._home(ids)
        while todo.size:
            key, row = self._records(slot)
            empty = row == EMPTY
            going = ~empty
            if rows is None:  # already here, or placed earlier in this call
                same = key == keys
                same &= going
                found[todo[same]] = row[same]
                going &= ~same
            claimers, claimed = todo[empty], slot[empty]
            mark = claimers.astype(np.uint64)
            self._slots[claimed, 1] = mark
            won = self._slots[claimed, 1] == mark
            self._settle(ids, rows, found, claimers[won], claimed[won])
            lost = empty
            lost[empty] = ~won  # a loser looks at the slot it lost again
            slot[going] += 1
            slot &= self._capacity - 1
            going |= lost
            todo, keys, slot = todo[going], keys[going], slot[going]
        return found

    def _settle(self, ids, rows, found, winners, slots):
        """Fill the slots won by ``winners`` with their ids and rows (new
        rows, unless ``rows`` gives them)."""
        if rows is None:
            new = np.arange(self.size, self.size + winners.size, dtype=np.uint64)
            self._grow_ids(self.size + winners.size)
            self._ids[self.size:self.size + winners.size] = ids[winners]
            self.size += winners.size
        else:
            new = rows[winners]
        self._slots[slots, 0] = ids[winners]
        self._slots[slots, 1] = new
        found[winners] = new

    def _grow_ids(self, count):
        if count > self._ids.size:
            grown = np.empty(max(count, 2 * self._ids.size), dtype=np.uint64)
            grown[:self.size] = self._ids[:self.size]
            self._ids = grown


def distinct(ids):
    """``ids`` without repeats (in no particular order), by way of a scratch
    map: no sort."""
    scratch = IdMap()
    scratch._reserve(ids.size)
    scratch._place(ids, None)
    return scratch.ids


def _slots_for(count):
    """The smallest power of two of slots holding ``count`` ids at MAX_LOAD."""
    needed = max(MIN_SLOTS, int(np.ceil(count / MAX_LOAD)))
    return 1 << (needed - 1).bit_length()
