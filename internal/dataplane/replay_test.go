package dataplane

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// doneLog records the calls of a replayBody's onDone function.
type doneLog struct {
	calls int
	body  []byte
	ok    bool
}

func (d *doneLog) f(body []byte, ok bool) { d.calls, d.body, d.ok = d.calls+1, body, ok }

func TestReplayBodyReplaysFromTheStart(t *testing.T) {
	t.Parallel()
	const text = "hello, replayed world"
	rb := newReplayBody(io.NopCloser(strings.NewReader(text)), -1)
	var d doneLog
	rb.onDone(d.f)
	first, ok := rb.next()
	if !ok {
		t.Fatal("first try refused")
	}
	part := make([]byte, 5)
	if _, err := io.ReadFull(first, part); err != nil || string(part) != "hello" {
		t.Fatalf("first try read %q, %v", part, err)
	}
	second, ok := rb.next()
	if !ok {
		t.Fatal("second try refused")
	}
	if _, err := first.Read(part); !errors.Is(err, errStaleTry) {
		t.Fatalf("the abandoned try read on: %v, want errStaleTry", err)
	}
	got, err := io.ReadAll(second)
	if err != nil || string(got) != text {
		t.Fatalf("second try read %q, %v; want the whole body", got, err)
	}
	if d.calls != 1 || !d.ok || string(d.body) != text {
		t.Fatalf("onDone called %d times with %q, %v; want once with the body", d.calls, d.body, d.ok)
	}
	rb.finish()
	if d.calls != 1 {
		t.Fatalf("finish called onDone again")
	}
	third, ok := rb.next()
	if !ok {
		t.Fatal("a complete body refused a third try")
	}
	if got, _ := io.ReadAll(third); string(got) != text {
		t.Fatalf("third try read %q", got)
	}
}

func TestReplayBodyLimits(t *testing.T) {
	t.Parallel()
	broken := errors.New("client went away")
	tests := []struct {
		name   string
		src    io.Reader
		length int64
		// readErr is the error the try's reader ends with.
		readErr error
		want    int // bytes the first try reads
		replay  bool
		done    bool // onDone gets the body
	}{
		{name: "exactly the limit", src: bytes.NewReader(make([]byte, maxReplayBody)), length: maxReplayBody, readErr: nil, want: maxReplayBody, replay: true, done: true},
		{name: "one byte more, unknown length", src: bytes.NewReader(make([]byte, maxReplayBody+1)), length: -1, want: maxReplayBody + 1},
		{name: "much more", src: bytes.NewReader(make([]byte, 5*maxReplayBody)), length: -1, want: 5 * maxReplayBody},
		{name: "empty", src: strings.NewReader(""), length: -1, want: 0, replay: true, done: true},
		{name: "source fails", src: io.MultiReader(strings.NewReader("part"), &failing{broken}), length: -1, readErr: broken, want: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rb := newReplayBody(io.NopCloser(tc.src), tc.length)
			var d doneLog
			rb.onDone(d.f)
			first, _ := rb.next()
			n, err := io.Copy(io.Discard, first)
			if n != int64(tc.want) || !errors.Is(err, tc.readErr) {
				t.Fatalf("first try read %d bytes, %v; want %d, %v", n, err, tc.want, tc.readErr)
			}
			if _, ok := rb.next(); ok != tc.replay {
				t.Errorf("replayable %v, want %v", ok, tc.replay)
			}
			if !tc.replay && tc.readErr == nil && len(rb.buf) != 0 {
				t.Errorf("%d bytes still kept of a body past the limit", len(rb.buf))
			}
			rb.finish()
			if d.calls != 1 || d.ok != tc.done || tc.done && len(d.body) != tc.want {
				t.Errorf("onDone called %d times, ok %v with %d bytes; want once, ok %v", d.calls, d.ok, len(d.body), tc.done)
			}
		})
	}
}

// The exchange ends before anyone read the body to its end: onDone hears of it once.
func TestReplayBodyFinishBeforeTheEnd(t *testing.T) {
	t.Parallel()
	rb := newReplayBody(io.NopCloser(strings.NewReader("unread")), 6)
	var d doneLog
	rb.onDone(d.f)
	rb.finish()
	rb.finish()
	if d.calls != 1 || d.ok {
		t.Fatalf("onDone called %d times, ok %v; want once, not ok", d.calls, d.ok)
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

// lastThenBlock returns its bytes with a nil error, then blocks, as an HTTP/2 request body
// whose end has not arrived: a transport that knows the length never reads further.
type lastThenBlock struct {
	data    []byte
	blocked chan struct{}
}

func (l *lastThenBlock) Read(p []byte) (int, error) {
	if len(l.data) == 0 {
		<-l.blocked
		return 0, io.EOF
	}
	n := copy(p, l.data)
	l.data = l.data[n:]
	return n, nil
}

// A body of announced length is whole once that many bytes are read, before its source
// says io.EOF.
func TestReplayBodyWholeAtItsLength(t *testing.T) {
	t.Parallel()
	src := &lastThenBlock{data: []byte("hello"), blocked: make(chan struct{})}
	defer close(src.blocked)
	rb := newReplayBody(io.NopCloser(src), 5)
	var d doneLog
	rb.onDone(d.f)
	first, _ := rb.next()
	buf := make([]byte, 5)
	if n, err := first.Read(buf); n != 5 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if d.calls != 1 || !d.ok || string(d.body) != "hello" {
		t.Fatalf("onDone called %d times with %q, %v; want once with the body", d.calls, d.body, d.ok)
	}
	second, _ := rb.next()
	if got, err := io.ReadAll(second); err != nil || string(got) != "hello" {
		t.Fatalf("a retry read %q, %v; want the body, without waiting on the client", got, err)
	}
}
