package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluice-gateway/sluice/internal/filter"
)

// handleUpgrade completes a protocol switch (WebSocket and other Upgrades): it forwards the
// 101 to the client on the hijacked connection, then copies bytes both ways until one side
// closes.
func (g *Gateway) handleUpgrade(ex *exchange, resp *http.Response) error {
	reqUp, respUp := upgradeType(ex.Request.Header), upgradeType(resp.Header)
	if !strings.EqualFold(reqUp, respUp) {
		return g.localReply(ex, badGateway(fmt.Sprintf("backend switched to protocol %q when %q was requested", respUp, reqUp)))
	}
	backConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return g.localReply(ex, badGateway("backend's 101 response has no writable body"))
	}
	defer backConn.Close()
	conn, brw, err := http.NewResponseController(ex.rw).Hijack()
	if err != nil {
		return g.localReply(ex, badGateway("cannot switch protocols on this connection: "+err.Error()))
	}
	defer conn.Close()
	ex.status = resp.StatusCode
	removeHopByHop(resp.Header, false)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{respUp}
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return fmt.Errorf("writing the 101 response: %w", err)
	}
	if err := brw.Flush(); err != nil {
		return fmt.Errorf("writing the 101 response: %w", err)
	}
	errc := make(chan error, 2)
	go func() {
		// Bytes the client sent after its request may already sit in brw's reader.
		_, err := io.Copy(backConn, brw)
		errc <- err
	}()
	go func() {
		n, err := io.Copy(conn, backConn)
		ex.written += n
		errc <- err
	}()
	pending := 2
	select {
	case err = <-errc:
		pending--
	case <-ex.ctx.Done():
		err = ex.ctx.Err()
	}
	// Closing both ends stops the copiers still running.
	conn.Close()
	backConn.Close()
	for ; pending > 0; pending-- {
		<-errc
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func badGateway(msg string) *filter.LocalReply {
	return filter.Reply(http.StatusBadGateway, "upgrade_failed", msg+"\n")
}
