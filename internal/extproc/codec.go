package extproc

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// chunkCodec is gRPC's proto codec with buffers sized for body chunks.
//
// gRPC's own codec marshals every message of 1 KiB or more into a buffer from
// mem.DefaultBufferPool, whose size classes are 256 B, 4 KiB, 16 KiB, 32 KiB and 1 MiB.
// A body message is a chunk of up to streamChunk (64 KiB) plus a few bytes of framing,
// so it lands in the 1 MiB class: each chunk in flight pins 1 MiB of heap (16 times its
// size), and the pool zeroes the whole 1 MiB on every Get. A full-duplex stream keeps
// about two chunks queued in gRPC's transport (its 64 KiB per-stream write quota plus
// the message that crossed it), so 64 concurrent 1 MiB uploads held ~115 MiB of live
// heap in these buffers and the process reached 380-510 MiB RSS at GOGC=100. Received
// messages, which arrive as 16 KiB frames, were likewise copied into a 1 MiB buffer
// before decoding.
//
// chunkCodec puts messages up to chunkBufSize in buffers of exactly that size from its
// own pool, decodes a message that arrived in one frame in place, and leaves every other
// size to gRPC's default pool. The wire format is unchanged (the same proto encoding)
// and so is the content-type: Name is empty, which makes gRPC send "application/grpc"
// as it does with its default codec, instead of "application/grpc+<name>".
type chunkCodec struct{}

// chunkBufSize is one body chunk plus room for the rest of its message (the oneof
// wrappers and end_of_stream, and on the first body message of a direction the
// protocol_config and attributes). Larger messages use gRPC's default pool.
const chunkBufSize = streamChunk + 4<<10

// chunkBufs is a mem.BufferPool whose buffers all have capacity chunkBufSize. Buffers
// are not zeroed: the codec overwrites all it hands out.
type chunkBufPool struct{ p sync.Pool }

var chunkBufs = &chunkBufPool{p: sync.Pool{New: func() any {
	b := make([]byte, chunkBufSize)
	return &b
}}}

// Get returns a buffer of length n; n must be at most chunkBufSize.
func (c *chunkBufPool) Get(n int) *[]byte {
	b := c.p.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// Put takes back a buffer from Get; any other is left to the garbage collector.
func (c *chunkBufPool) Put(b *[]byte) {
	if cap(*b) == chunkBufSize {
		c.p.Put(b)
	}
}

// poolFor is the pool for an n-byte buffer.
func poolFor(n int) mem.BufferPool {
	if n > 32<<10 && n <= chunkBufSize {
		// Between gRPC's 32 KiB and 1 MiB classes: ours.
		return chunkBufs
	}
	return mem.DefaultBufferPool()
}

func (chunkCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("proto: cannot marshal %T", v)
	}
	// UseCachedSize below relies on this Size call on the same, unchanging message, as
	// in gRPC's codec.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	pool := poolFor(size)
	buf := pool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto: cannot unmarshal into %T", v)
	}
	// proto.Unmarshal copies bytes fields out of its input, so the input may be
	// released (or reused) as soon as it returns.
	if len(data) == 1 {
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	}
	n := data.Len()
	pool := poolFor(n)
	buf := pool.Get(n)
	defer pool.Put(buf)
	data.CopyTo(*buf)
	return proto.Unmarshal(*buf, m)
}

// Name is empty so that the content-type stays "application/grpc" (see chunkCodec).
func (chunkCodec) Name() string { return "" }

// Receive windows of a processor connection (see Pool.conn): four body chunks per
// stream, and enough on the connection for 64 streams' windows at once.
const (
	streamWindow = 4 * streamChunk
	connWindow   = 64 * streamWindow
)

// codecOption makes every call on a processor connection use chunkCodec.
func codecOption() grpc.CallOption { return grpc.ForceCodecV2(chunkCodec{}) }
