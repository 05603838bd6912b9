package datastore

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the client returns for these conditions wraps
// one of them (test with errors.Is) and names the key or resource.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a create found the key already present.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: a compare-and-swap failed because the stored revision is
	// not the one the caller read (someone else wrote in between).
	ErrConflict = errors.New("conflict: the resource was modified by someone else")
	// ErrInvalid: the object cannot be stored as given (no name, a namespace
	// on a cluster-scoped kind, an unknown kind, ...).
	ErrInvalid = errors.New("invalid")
)

func notFound(key string) error { return fmt.Errorf("%s: %w", key, ErrNotFound) }

func alreadyExists(key string) error { return fmt.Errorf("%s: %w", key, ErrAlreadyExists) }

func conflict(key string, rev int64) error {
	return fmt.Errorf("%s (expected revision %d): %w", key, rev, ErrConflict)
}
