package datastore

// Test hooks, visible to the datastore_test package only.

// SetBeforeChunk runs f before each write transaction of a batch.
func SetBeforeChunk(c *Client, f func(chunk int) error) { c.beforeChunk = f }

// SetAfterRead runs f between a batch plan's read and its decisions, so
// that a test can race the batch.
func SetAfterRead(c *Client, f func()) { c.afterRead = f }

// SetBeforeWatch runs f before every watcher of c opens an etcd watch.
func SetBeforeWatch(c *Client, f func(rev int64)) { c.beforeWatch = f }

// Etcd exposes the underlying etcd client for tests that write behind the
// datastore's back.
func Etcd(c *Client) any { return c.etcd }

// Encode is the JSON the datastore stores for obj.
var Encode = encode
