package plugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/containernetworking/cni/pkg/types"
)

// maxAnswer bounds an answer's size.
const maxAnswer = 4 << 20

// client speaks the wire protocol to the agent over its unix socket. It
// speaks just enough HTTP/1.0 by hand (one request per connection, the
// answer runs to the end of the connection) so that the plugin binary
// does without net/http and crypto/tls: a runtime starts the plugin for
// every ADD, and their initialisation and page faults were a large part
// of its CPU time.
type client struct {
	socket string
}

func newClient(socket string) *client { return &client{socket: socket} }

// notRunning reports whether err means nothing listens on the socket.
func notRunning(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}

// call POSTs req (or GETs when req is nil) and decodes the answer into
// resp. Failures come back as *types.Error with the service's CNI code.
func (c *client) call(ctx context.Context, path string, req, resp any) error {
	method, body := "GET", []byte(nil)
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return types.NewError(types.ErrInternal, "encode request", err.Error())
		}
		method, body = "POST", b
	}
	status, reason, data, err := c.exchange(ctx, method, path, body)
	if err != nil {
		switch {
		case notRunning(err):
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent is not running (nothing listens on %s)", c.socket), err.Error())
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent on %s did not answer %s in time", c.socket, path), err.Error())
		}
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent on %s: %s", c.socket, path), err.Error())
	}
	if status != 200 {
		var we wire.Error
		if err := json.Unmarshal(data, &we); err != nil || we.Msg == "" {
			return types.NewError(types.ErrInternal, fmt.Sprintf("brindle agent: %s: %d %s", path, status, reason), string(bytes.TrimSpace(data)))
		}
		return types.NewError(we.Code, we.Msg, we.Details)
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("brindle agent: %s: decode answer", path), err.Error())
	}
	return nil
}

// exchange sends one HTTP/1.0 request and reads the whole answer. ctx
// bounds it: its deadline becomes the connection's, and cancelling it
// closes the connection.
func (c *client) exchange(ctx context.Context, method, path string, body []byte) (status int, reason string, data []byte, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return 0, "", nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(what string, err error) (int, string, []byte, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return 0, "", nil, fmt.Errorf("%s: %w", what, err)
	}

	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: brindle-agent\r\n", method, path)
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return fail("send request", err)
	}

	br := bufio.NewReader(io.LimitReader(conn, maxAnswer))
	line, err := br.ReadString('\n')
	if err != nil {
		return fail("read status line", err)
	}
	// "HTTP/1.x 200 OK"
	f := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, "", nil, fmt.Errorf("bad status line %q", strings.TrimSpace(line))
	}
	if status, err = strconv.Atoi(f[1]); err != nil || status < 100 || status > 999 {
		return 0, "", nil, fmt.Errorf("bad status line %q", strings.TrimSpace(line))
	}
	if len(f) == 3 {
		reason = f[2]
	}
	length := -1
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return fail("read headers", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || length < 0 {
				return 0, "", nil, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length >= 0 {
		data = make([]byte, length)
		if _, err := io.ReadFull(br, data); err != nil {
			return fail("read answer", err)
		}
		return status, reason, data, nil
	}
	if data, err = io.ReadAll(br); err != nil {
		return fail("read answer", err)
	}
	return status, reason, data, nil
}
