package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/brindle-net/brindle/api"
)

// storedConfig is the JSON Calico's etcd backend keeps at ConfigKey.
type storedConfig struct {
	StrictAffinity     bool `json:"strict_affinity,omitempty"`
	AutoAllocateBlocks bool `json:"auto_allocate_blocks,omitempty"`
	MaxBlocksPerHost   int  `json:"maxBlocksPerHost,omitempty"`
}

// LoadConfig reads the IPAM settings stored at ConfigKey in Calico's format
// (strict_affinity, auto_allocate_blocks, maxBlocksPerHost). It returns nil
// (defaults) and revision 0 if the key does not exist.
func LoadConfig(ctx context.Context, st Store) (*api.IPAMConfigurationSpec, int64, error) {
	raw, rev, err := st.Get(ctx, ConfigKey)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("ipam: read %s: %w", ConfigKey, err)
	}
	var c storedConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, 0, fmt.Errorf("ipam: %s: %w", ConfigKey, err)
	}
	auto := c.AutoAllocateBlocks
	return &api.IPAMConfigurationSpec{StrictAffinity: c.StrictAffinity, AutoAllocateBlocks: &auto,
		MaxBlocksPerHost: int32(c.MaxBlocksPerHost)}, rev, nil
}

// SaveConfig writes spec at ConfigKey in Calico's format: created if rev is
// 0, else compare-and-swapped at rev. ipCooldownSeconds and KubeVirt
// settings have no place in that format and are rejected if set.
func SaveConfig(ctx context.Context, st Store, spec api.IPAMConfigurationSpec, rev int64) (int64, error) {
	if spec.IPCooldownSeconds != nil || spec.KubeVirtVMAddressPersistence != "" {
		return 0, errors.New("ipam: ipCooldownSeconds and kubeVirtVMAddressPersistence cannot be stored at " + ConfigKey)
	}
	if spec.MaxBlocksPerHost < 0 {
		return 0, fmt.Errorf("ipam: maxBlocksPerHost %d is negative", spec.MaxBlocksPerHost)
	}
	c := storedConfig{StrictAffinity: spec.StrictAffinity, AutoAllocateBlocks: true, MaxBlocksPerHost: int(spec.MaxBlocksPerHost)}
	if spec.AutoAllocateBlocks != nil {
		c.AutoAllocateBlocks = *spec.AutoAllocateBlocks
	}
	val, _ := json.Marshal(c)
	var err error
	if rev == 0 {
		rev, err = st.Create(ctx, ConfigKey, val)
	} else {
		rev, err = st.Update(ctx, ConfigKey, val, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("ipam: write %s: %w", ConfigKey, err)
	}
	return rev, nil
}
