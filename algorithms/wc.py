"""Word count with top-k, the parameter-server way.

Each worker counts the words of its share of the input locally, then pushes
its counts to the servers in one batched ``add`` per server; after a
``sync`` every count is complete. Every word has an owner worker (a stable
hash of the word): workers send each owner the words they saw (one
``alltoall``), each owner reads back the global counts of its words, writes
them, and sends its local top-k to worker 0, which merges them into the
global top-k. No worker ever lists the whole vocabulary.

Input: UTF-8 text files (a file, folder, glob or list). A word is a run of
letters and digits, with inner apostrophes kept (``don't``); underscores and
other punctuation separate words. Words are lower-cased unless ``lower`` is
false.

Output: ``OUTPUT/wc_<worker_id>`` with ``word\\tcount`` lines (every word
exactly once over all workers) and ``OUTPUT/topk.txt`` with the ``topk`` most
frequent words, most frequent first (ties by word).
"""

import heapq
import re
from collections import Counter

import paracel
from paracel.partition import stable_hash

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
PREFIX = "wc"


class WordCount(paracel.Algorithm):
    """Count words; report the ``topk`` most frequent."""

    summary = "word count with top-k (counts aggregated on the servers with 'add')"
    reads = ('any UTF-8 text; words are runs of letters and digits (inner apostrophes kept), '
             'lower-cased unless lower is false')
    parameters = {
        "topk": paracel.Param(int, 10, "how many of the most frequent words to report", low=1),
        "lower": paracel.Param(bool, True, "fold words to lower case"),
    }

    def solve(self):
        counts = self.count_share()
        if self.clock == 0:  # not yet pushed (a resumed job finds them on the servers)
            if counts:
                self.update_multi({(PREFIX, word): n for word, n in counts.items()}, "add")
            self.sync()
            self.iter_commit()
        mine = self.owned_counts(counts)
        self.dump("wc_", sorted(mine.items()))
        parts = self.allgather_objects((_top(mine, self.topk), len(mine), sum(mine.values())))
        if self.worker_id != 0:
            return {}
        best = _top(dict(pair for top, _, _ in parts for pair in top), self.topk)
        self.write_top(best)
        return {"distinct_words": sum(part[1] for part in parts),
                "words": sum(part[2] for part in parts),
                "top_word": best[0][0] if best else None}

    def state(self):
        """Nothing to keep: the counts are on the servers after clock 1, and
        which words this worker saw is counted again from its share."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    def count_share(self):
        """This worker's word counts over its share of the input."""
        counts = Counter()
        self.for_each_line(
            lambda line: counts.update(WORD.findall(line.lower() if self.lower else line)))
        return counts

    def owned_counts(self, counts):
        """The global counts of the words this worker owns."""
        outgoing = [[] for _ in range(self.num_workers)]
        for word in counts:
            outgoing[stable_hash(word) % self.num_workers].append(word)
        owned = sorted({word for words in self.comm.alltoall(outgoing) for word in words})
        values = self.read_multi([(PREFIX, word) for word in owned])
        return dict(zip(owned, values))

    def write_top(self, best):
        """``OUTPUT/topk.txt``: the global top-k."""
        with self.open_output("topk.txt") as handle:
            for word, count in best:
                handle.write(f"{word}\t{count}\n")


def _top(counts, k):
    return heapq.nsmallest(k, counts.items(), key=lambda pair: (-pair[1], pair[0]))
