package ipam

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/api"
)

func TestConfigRoundTrip(t *testing.T) {
	ctx := t.Context()
	st := NewMemStore()
	if c, rev, err := LoadConfig(ctx, st); c != nil || rev != 0 || err != nil {
		t.Fatalf("empty store: %v %d %v", c, rev, err)
	}
	no := false
	spec := api.IPAMConfigurationSpec{StrictAffinity: true, MaxBlocksPerHost: 4, AutoAllocateBlocks: &no}
	rev, err := SaveConfig(ctx, st, spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, _ := st.Get(ctx, ConfigKey)
	if got, want := string(raw), `{"strict_affinity":true,"maxBlocksPerHost":4}`; got != want {
		t.Errorf("stored %s, want %s", got, want)
	}
	got, rev2, err := LoadConfig(ctx, st)
	if err != nil || rev2 != rev {
		t.Fatalf("load: rev %d (want %d), %v", rev2, rev, err)
	}
	if diff := cmp.Diff(&spec, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := SaveConfig(ctx, st, spec, 0); !errors.Is(err, ErrExists) {
		t.Errorf("create over existing: %v, want ErrExists", err)
	}
	if _, err := SaveConfig(ctx, st, spec, rev+100); !errors.Is(err, ErrConflict) {
		t.Errorf("stale update: %v, want ErrConflict", err)
	}
	secs := 5
	if _, err := SaveConfig(ctx, st, api.IPAMConfigurationSpec{IPCooldownSeconds: &secs}, rev); err == nil {
		t.Error("cooldown accepted in the legacy format")
	}
}
