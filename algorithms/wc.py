"""Word count with top-k, the parameter-server way.

Each worker counts the words of its share of the input locally, then pushes
its counts to the servers in one batched ``add`` per server; after a
``sync`` every count is complete. Each worker then reads back a slice of the
vocabulary, writes it, and sends its local top-k to worker 0, which merges
them into the global top-k.

Input: UTF-8 text files. Words are maximal runs of letters, digits and
apostrophes, lower-cased unless ``lower`` is false.

Output: ``OUTPUT/wc_<worker_id>`` with ``word\\tcount`` lines (every word
exactly once over all workers) and ``OUTPUT/topk.txt`` with the ``topk`` most
frequent words, most frequent first (ties by word).
"""

import heapq
import os
import re
from collections import Counter

import paracel
from paracel.io.lines import iter_lines

WORD = re.compile(r"[\w']+")
PREFIX = "wc"


class WordCount(paracel.Algorithm):
    """Count words; report the ``topk`` most frequent."""

    summary = "word count with top-k (counts aggregated on the servers with 'add')"
    parameters = {
        "topk": paracel.Param(int, 10, "how many of the most frequent words to report", low=1),
        "lower": paracel.Param(bool, True, "fold words to lower case"),
    }

    def solve(self):
        counts = self.count_share()
        if counts:
            self.update_multi({(PREFIX, word): n for word, n in counts.items()}, "add")
        self.sync()
        mine = self.my_slice()
        self.write_counts(mine)
        parts = self.comm.gather((_top(mine, self.topk), len(mine), sum(mine.values())), root=0)
        if self.worker_id != 0:
            return {}
        best = _top(dict(pair for top, _, _ in parts for pair in top), self.topk)
        self.write_top(best)
        return {"distinct_words": sum(part[1] for part in parts),
                "words": sum(part[2] for part in parts),
                "top_word": best[0][0] if best else None}

    def count_share(self):
        """This worker's word counts over its share of the input."""
        counts = Counter()
        for _, _, line in iter_lines(self.input_files, self.worker_id, self.num_workers):
            counts.update(WORD.findall(line.lower() if self.lower else line))
        return counts

    def my_slice(self):
        """This worker's slice of the vocabulary, with the global counts."""
        keys = sorted(key for key in self.keys(PREFIX) if key[0] == PREFIX)
        keys = keys[self.worker_id::self.num_workers]
        return {key[1]: count for key, count in zip(keys, self.read_multi(keys))}

    def write_counts(self, counts):
        """``OUTPUT/wc_<id>``: one ``word\\tcount`` line per word of this slice."""
        path = os.path.join(self.output, f"wc_{self.worker_id}")
        with open(path, "w", encoding="utf-8") as handle:
            for word in sorted(counts):
                handle.write(f"{word}\t{counts[word]}\n")

    def write_top(self, best):
        """``OUTPUT/topk.txt``: the global top-k."""
        with open(os.path.join(self.output, "topk.txt"), "w", encoding="utf-8") as handle:
            for word, count in best:
                handle.write(f"{word}\t{count}\n")


def _top(counts, k):
    return heapq.nsmallest(k, counts.items(), key=lambda pair: (-pair[1], pair[0]))
