// Command brindlectl manages a Brindle network.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/brindle-net/brindle/ctl"
)

func main() {
	opts := &ctl.Options{
		Streams: ctl.Streams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Getenv:  os.Getenv,
	}
	err := ctl.NewRootCommand(opts).Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		os.Exit(coded.ExitCode())
	}
	os.Exit(1)
}
