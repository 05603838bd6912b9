package routing

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger forwards GoBGP's logs to slog. GoBGP's Info lines (every
// session change) become Debug, its warnings and errors stay.
type gobgpLogger struct {
	l *slog.Logger
}

func newGoBGPLogger(l *slog.Logger) gobgplog.Logger {
	return gobgpLogger{l: l.With("component", "gobgp")}
}

func (g gobgpLogger) log(level slog.Level, msg string, f gobgplog.Fields) {
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]any, 0, 2*len(f))
	for k, v := range f {
		attrs = append(attrs, k, v)
	}
	g.l.Log(context.Background(), level, msg, attrs...)
}

func (g gobgpLogger) Panic(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Fatal(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Error(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Warn(msg string, f gobgplog.Fields)  { g.log(slog.LevelWarn, msg, f) }
func (g gobgpLogger) Info(msg string, f gobgplog.Fields)  { g.log(slog.LevelDebug, msg, f) }
func (g gobgpLogger) Debug(msg string, f gobgplog.Fields) { g.log(slog.LevelDebug-4, msg, f) }

// SetLevel is ignored: the slog handler decides.
func (g gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel reports debug only when the handler takes GoBGP's debug lines,
// so that GoBGP does not build them for nothing.
func (g gobgpLogger) GetLevel() gobgplog.LogLevel {
	if g.l.Enabled(context.Background(), slog.LevelDebug-4) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
