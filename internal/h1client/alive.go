package h1client

import (
	"errors"
	"syscall"
)

// alive reports whether an idle pooled connection can carry a request: the server has
// not closed it (a FIN or RST waiting to be read) and sent nothing unasked. It peeks
// without consuming or blocking, so a live connection is left exactly as it was. A
// request with a body sent on a connection the server already closed could not be
// replayed, and would fail with 502 although the close was known here.
func alive(cn *conn) bool {
	if cn.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	sc, ok := cn.nc.(syscall.Conn)
	if !ok {
		return true // not a plain socket (a test double, TLS): the write will tell
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	live := true
	var buf [1]byte
	cerr := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			// Nothing to read: still open.
		default:
			live = false // an error, EOF (n == 0), or unsolicited data
			_ = n
		}
		return true // never wait for readiness
	})
	return cerr == nil && live
}
