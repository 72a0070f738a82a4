package cow

import (
	"io"
)

// chunkReader reads a stream in a goroutine of its own, so that the copy out of the socket (the
// biggest single cost of the page server) runs on another CPU than the dedup work. next hands out
// the stream's bytes without copying when they lie in one chunk.
type chunkReader struct {
	full    chan chunk
	free    chan []byte
	done    chan struct{}
	cur     []byte // unread part of the chunk being consumed
	held    []byte // that chunk's buffer, returned to free when the consumer moves on
	scratch []byte
	err     error
}

type chunk struct {
	b   []byte
	err error
}

func newChunkReader(r io.Reader, chunks, size int) *chunkReader {
	c := &chunkReader{full: make(chan chunk, chunks), free: make(chan []byte, chunks), done: make(chan struct{})}
	for range chunks {
		c.free <- make([]byte, size)
	}
	go func() {
		for {
			var b []byte
			select {
			case b = <-c.free:
			case <-c.done:
				return
			}
			n, err := r.Read(b[:cap(b)])
			if n > 0 || err == nil {
				if !c.send(chunk{b: b[:n]}) {
					return
				}
			}
			if err != nil {
				c.send(chunk{err: err})
				return
			}
		}
	}()
	return c
}

func (c *chunkReader) send(ch chunk) bool {
	select {
	case c.full <- ch:
		return true
	case <-c.done:
		return false
	}
}

// close stops the reading goroutine (it may still be blocked in Read until the stream closes).
func (c *chunkReader) close() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

// fill makes cur non-empty, releasing the previous chunk.
func (c *chunkReader) fill() error {
	for len(c.cur) == 0 {
		if c.err != nil {
			return c.err
		}
		if c.held != nil {
			c.free <- c.held[:cap(c.held)]
			c.held = nil
		}
		ch := <-c.full
		if ch.err != nil {
			c.err = ch.err
			return ch.err
		}
		c.cur, c.held = ch.b, ch.b
	}
	return nil
}

// next returns the next n bytes of the stream. The slice is valid until the following call.
// At the end of the stream it returns io.EOF if no byte was read, io.ErrUnexpectedEOF otherwise.
func (c *chunkReader) next(n int) ([]byte, error) {
	if len(c.cur) >= n {
		b := c.cur[:n:n]
		c.cur = c.cur[n:]
		return b, nil
	}
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	s := c.scratch[:0]
	for len(s) < n {
		if err := c.fill(); err != nil {
			if err == io.EOF && len(s) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		k := min(n-len(s), len(c.cur))
		s = append(s, c.cur[:k]...)
		c.cur = c.cur[k:]
	}
	return s, nil
}

// drain reads and drops everything up to the end of the stream.
func (c *chunkReader) drain() {
	for {
		c.cur = nil
		if c.fill() != nil {
			return
		}
	}
}
