package agent

import (
	"os"
	"testing"

	"github.com/brindle-net/brindle/datastore/datastoretest"
)

// TestMain lets the label benchmarks run etcd in a child process (this
// binary again, see datastoretest.Options.Separate).
func TestMain(m *testing.M) {
	datastoretest.ServeIfChild()
	os.Exit(m.Run())
}
