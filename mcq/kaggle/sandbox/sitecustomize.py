"""mcq rehearsal: block the network for this process, as Kaggle runs the kernel with internet off.
Connections and name look-ups for anything but loopback raise NetworkBlocked (an OSError)."""

import ipaddress
import socket


class NetworkBlocked(ConnectionRefusedError):
    pass


def _local(host):
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what):
    raise NetworkBlocked(f"network access blocked by the mcq rehearsal (Kaggle kernels run with internet off): {what}")


_connect, _connect_ex, _sendto, _getaddrinfo = (
    socket.socket.connect,
    socket.socket.connect_ex,
    socket.socket.sendto,
    socket.getaddrinfo,
)


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect to {address}")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect to {address}")
    return _connect_ex(self, address)


def sendto(self, data, *args):
    address = args[-1]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"send to {address}")
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        _refuse(f"look up {host}")
    return _getaddrinfo(host, *args, **kwargs)


# Patching the class's methods is the point (every socket in this process goes through the checks).
socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
socket.socket.sendto = sendto  # type: ignore[method-assign]
socket.getaddrinfo = getaddrinfo
