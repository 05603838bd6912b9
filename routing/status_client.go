package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// FetchStatus reads StatusPath from a brindle node's local API on the unix
// socket at socket (what brindlectl node status and the lab use). Errors
// name the socket.
func FetchStatus(ctx context.Context, socket string) (DaemonStatus, error) {
	var st DaemonStatus
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://node"+StatusPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return st, fmt.Errorf("brindle node is not running (or not reachable) at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return st, fmt.Errorf("brindle node at %s: %w", socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("brindle node at %s: %s %s: %s", socket, StatusPath, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("brindle node at %s: bad %s answer: %w", socket, StatusPath, err)
	}
	return st, nil
}
