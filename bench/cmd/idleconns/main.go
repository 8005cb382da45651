// Command idleconns opens -n HTTP/1.1 keep-alive connections to -addr, completes one
// request on each (so that each is an idle keep-alive connection, as a browser or client
// pool leaves it), writes "ready N" to stdout and holds them open for -hold or until it
// is signalled.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18092", "host:port of the proxy")
	host := flag.String("host", "plain.bench", "Host header")
	n := flag.Int("n", 10000, "connections")
	par := flag.Int("par", 100, "connections opened in parallel")
	hold := flag.Duration("hold", 60*time.Second, "how long to hold the connections")
	flag.Parse()

	req := []byte("GET / HTTP/1.1\r\nHost: " + *host + "\r\n\r\n")
	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				c, err := net.DialTimeout("tcp", *addr, 10*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := c.Write(req); err != nil {
					failed.Add(1)
					c.Close()
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					failed.Add(1)
					c.Close()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				_ = c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	open := *n - int(failed.Load())
	fmt.Printf("ready %d\n", open)
	if failed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "idleconns: %d connections failed\n", failed.Load())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
