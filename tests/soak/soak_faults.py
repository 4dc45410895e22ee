"""The soak's file faults: resource files go missing, are swapped for a symbolic link, a FIFO or
another tenant file, or are truncated, one at a time, and are put back (docs/soak.md).

A LOAD_MISS that reads a broken file faults IO_ERROR (ENOENT, ELOOP, EINVAL, ENODATA); a
swapped file loads the other file's bytes (the same size). Replacements are atomic renames, so
a read sees the file before or after a change, never half of one."""
import os
import random
import threading

KINDS = ("missing", "symlink", "fifo", "truncated", "swapped")


class FileFaults:
    def __init__(self, files, period, seed):
        self.files = list(files)
        self.period = period
        self.rng = random.Random(seed)
        self.originals = {}
        for path in self.files:
            with open(path, "rb") as f:
                self.originals[path] = f.read()
        self.counts = {k: 0 for k in KINDS}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        for path in self.files:
            self._restore(path)

    def _run(self):
        # Event.wait paces the schedule and returns at once when the soak stops.
        while not self.stopping.wait(self.period):
            path = self.rng.choice(self.files)
            kind = self.rng.choice(KINDS)
            touched = self._break(path, kind)
            self.counts[kind] += 1
            self.stopping.wait(self.period / 2)  # broken for half a period
            for p in touched:
                self._restore(p)

    def _siblings(self, path):
        folder = os.path.dirname(path)
        return [p for p in self.files if os.path.dirname(p) == folder and p != path]

    def _break(self, path, kind):
        """Breaks `path`; returns the files to restore."""
        if kind == "missing":
            os.unlink(path)
        elif kind == "symlink":
            tmp = path + ".link"
            os.symlink(os.path.basename(self._siblings(path)[0]), tmp)
            os.rename(tmp, path)
        elif kind == "fifo":
            tmp = path + ".fifo"
            os.mkfifo(tmp)
            os.rename(tmp, path)
        elif kind == "truncated":
            os.truncate(path, len(self.originals[path]) // 2)
        else:  # swapped with a sibling: both still regular files, with each other's bytes
            other = self.rng.choice(self._siblings(path))
            tmp = path + ".swap"
            os.rename(path, tmp)
            os.rename(other, path)
            os.rename(tmp, other)
            return [path, other]
        return [path]

    def _restore(self, path):
        tmp = path + ".restore"
        with open(tmp, "wb") as f:
            f.write(self.originals[path])
        os.rename(tmp, path)
