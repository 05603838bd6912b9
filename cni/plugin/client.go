package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/containernetworking/cni/pkg/types"
)

// client speaks the wire protocol to the agent over its unix socket.
type client struct {
	socket string
	hc     *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &client{socket: socket, hc: &http.Client{Transport: tr}}
}

// notRunning reports whether err means nothing listens on the socket.
func notRunning(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}

// call POSTs req (or GETs when req is nil) and decodes the answer into
// resp. Failures come back as *types.Error with the service's CNI code.
func (c *client) call(ctx context.Context, path string, req, resp any) error {
	method, body := http.MethodGet, io.Reader(nil)
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return types.NewError(types.ErrInternal, "encode request", err.Error())
		}
		method, body = http.MethodPost, bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://brindle-agent"+path, body)
	if err != nil {
		return types.NewError(types.ErrInternal, "build request", err.Error())
	}
	hr.Header.Set("Content-Type", "application/json")
	r, err := c.hc.Do(hr)
	if err != nil {
		switch {
		case notRunning(err):
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent is not running (nothing listens on %s)", c.socket), err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent on %s did not answer %s in time", c.socket, path), err.Error())
		}
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent on %s: %s", c.socket, path), err.Error())
	}
	defer r.Body.Close()
	data, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("brindle agent on %s: read %s answer", c.socket, path), err.Error())
	}
	if r.StatusCode != http.StatusOK {
		var we wire.Error
		if err := json.Unmarshal(data, &we); err != nil || we.Msg == "" {
			return types.NewError(types.ErrInternal, fmt.Sprintf("brindle agent: %s: %s", path, r.Status), string(bytes.TrimSpace(data)))
		}
		return types.NewError(we.Code, we.Msg, we.Details)
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("brindle agent: %s: decode answer", path), err.Error())
	}
	return nil
}
