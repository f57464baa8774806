"""A tiny DNS server for the labs (UDP, A records only), so a test can watch which names a
resolver asks for. It answers the names it is given with their IPv4 address, says NXDOMAIN
to every other name (NOERROR and no answer to another type of a known name), and records
each question's name, lowercased, in `asked`. Serves from a thread on a socket the caller
made (lab.socket_in(ns, AF_INET, SOCK_DGRAM) for one inside a namespace) until stop()."""

import socket
import struct
import threading


class DnsStub:
    def __init__(self, sock, answers):
        self.sock, self.answers, self.asked = sock, dict(answers), []
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.reply(data)
            except (IndexError, struct.error, UnicodeError):
                continue
            self.sock.sendto(reply, peer)

    def reply(self, data):
        labels, i = [], 12
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii"))
            i += 1 + data[i]
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        question = data[12:i + 5]
        name = ".".join(labels).lower()
        self.asked.append(name)
        address = self.answers.get(name)
        rcode = 0 if address else 3
        answers = b""
        if address and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
        head = struct.pack("!HHHHHH", struct.unpack("!H", data[:2])[0], 0x8180 | rcode, 1,
                           1 if answers else 0, 0, 0)
        return head + question + answers

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
