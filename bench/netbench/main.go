// Command netbench is the lab benchmarks' traffic tool. It is run inside a
// pod's network namespace (`ip netns exec POD netbench ...`), so every
// socket it opens is the pod's.
//
//	netbench serve -listen :5001
//	    accepts connections; on each reads one byte, writes it back, then
//	    waits for the peer to close.
//	netbench rate -to 10.244.1.1:5001 -duration 5s -workers 4
//	    opens as many short connections as it can (connect, one byte each
//	    way, close with RST so no TIME_WAIT piles up) and prints
//	    "conns=N errors=E seconds=S rate=R" (R connections per second).
//	netbench reach -to 10.244.1.5:5001 -watch /run/netns/NAME -timeout 15s
//	    starts a TCP connect to the address every -interval until one is
//	    answered (connected, or refused: a RST also proves that the
//	    address is routed and its policy let the SYN in) and prints
//	    "watch_ns=T0 reach_ns=T1": T0 is when the -watch path first
//	    existed, T1 when the first answer arrived (Unix nanoseconds).
//
// Each attempt has its own socket, so a SYN retransmitted after the route
// appeared cannot make an early attempt look fast: T1 is a completion
// time, an upper bound on the moment the pod became reachable, at most
// -interval plus one round trip late.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netbench serve|rate|reach [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "rate":
		err = rate(os.Args[2:])
	case "reach":
		err = reach(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want serve, rate or reach", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":5001", "address to listen on")
	_ = fs.Parse(args)
	l, err := net.Listen("tcp4", *listen)
	if err != nil {
		return err
	}
	return serveOn(l)
}

// serveOn answers connections on l until it is closed.
func serveOn(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			if _, err := c.Write(b); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// once makes one short connection: connect, one byte each way, RST.
func once(d *net.Dialer, to string) error {
	c, err := d.Dial("tcp4", to)
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	defer func() {
		_ = tc.SetLinger(0)
		_ = tc.Close()
	}()
	_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
	b := []byte{'x'}
	if _, err := tc.Write(b); err != nil {
		return err
	}
	_, err = io.ReadFull(tc, b)
	return err
}

func rate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ExitOnError)
	to := fs.String("to", "", "server address IP:PORT")
	dur := fs.Duration("duration", 5*time.Second, "how long to open connections")
	workers := fs.Int("workers", 4, "connections opened concurrently")
	_ = fs.Parse(args)
	if *to == "" {
		return errors.New("rate: -to is required")
	}
	if *workers < 1 {
		return fmt.Errorf("rate: -workers %d: want at least 1", *workers)
	}
	var ok, bad atomic.Int64
	var firstErr atomic.Value
	d := &net.Dialer{Timeout: 2 * time.Second}
	start := time.Now()
	end := start.Add(*dur)
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if err := once(d, *to); err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("conns=%d errors=%d seconds=%.3f rate=%.0f\n", ok.Load(), bad.Load(), secs, float64(ok.Load())/secs)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "netbench: rate: first error: %s\n", e)
	}
	if ok.Load() == 0 {
		return errors.New("rate: no connection succeeded")
	}
	return nil
}

func reach(args []string) error {
	fs := flag.NewFlagSet("reach", flag.ExitOnError)
	to := fs.String("to", "", "address to reach IP:PORT")
	watch := fs.String("watch", "", "path whose appearance is time zero (e.g. the pod's /run/netns file)")
	timeout := fs.Duration("timeout", 15*time.Second, "give up after")
	interval := fs.Duration("interval", 5*time.Millisecond, "time between connection attempts")
	_ = fs.Parse(args)
	if *to == "" {
		return errors.New("reach: -to is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var watchNS atomic.Int64
	if *watch != "" {
		go func() {
			for ctx.Err() == nil {
				if _, err := os.Stat(*watch); err == nil {
					watchNS.Store(time.Now().UnixNano())
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	answered := make(chan int64, 1)
	d := &net.Dialer{Timeout: 3 * time.Second}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case t := <-answered:
			w := watchNS.Load()
			if *watch != "" && w == 0 {
				return fmt.Errorf("reach: %s answered but %s never appeared", *to, *watch)
			}
			fmt.Printf("watch_ns=%d reach_ns=%d\n", w, t)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("reach: %s not reached within %s", *to, *timeout)
		case <-tick.C:
			go func() {
				c, err := d.DialContext(ctx, "tcp4", *to)
				now := time.Now().UnixNano()
				if err == nil {
					c.Close()
				} else if !errors.Is(err, syscall.ECONNREFUSED) {
					return
				}
				select {
				case answered <- now:
				default:
				}
			}()
		}
	}
}
