"""A TCP proxy the end-to-end tests and the nemesis cut: between a node and PostgreSQL (the
database unreachable for that node), or in front of a node's cluster listener (its links)."""
import socket
import threading
import time


class Proxy:
    """Forwards TCP to a target; `cut()` drops every connection and refuses new ones;
    `stall()` keeps them but forwards nothing (a database that stops answering)."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.stalled = threading.Event()
        self.sockets = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self.target)
                except OSError:
                    client.close()  # nothing listens there now (a node that died): refused as it would be
                    continue
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while data := a.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.01)  # holding the bytes, as a silent network would
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.open = False
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets = []

    def stall(self):
        self.stalled.set()

    def restore(self):
        self.stalled.clear()
        with self.lock:
            self.open = True

    def close(self):
        self.cut()
        self.listener.close()
