package selector

import (
	"syscall"
	"testing"
	"time"
)

// cpuClock reports this process's CPU time (user + system, all threads,
// so including the garbage collector's background work) per benchmark
// operation as the metric "cpu-ns/op". On a shared, loaded machine
// wall-clock ns/op also counts time the benchmark spent descheduled;
// cpu-ns/op does not.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

func startCPUClock(b *testing.B) cpuClock {
	return cpuClock{b: b, start: processCPU()}
}

func (c cpuClock) report() {
	if c.b.N > 0 {
		c.b.ReportMetric(float64(processCPU()-c.start)/float64(c.b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
