package datastore

// Test hooks, visible to the datastore_test package only.

// SetBeforeChunk runs f before each write transaction of a batch.
func SetBeforeChunk(c *Client, f func(chunk int) error) { c.beforeChunk = f }

// SetAfterFastRead runs f between a batch's serializable read and its
// plan, so that a test can make that read stale.
func SetAfterFastRead(c *Client, f func()) { c.afterFastRead = f }

// SetBeforeWatch runs f before every watcher of c opens an etcd watch.
func SetBeforeWatch(c *Client, f func(rev int64)) { c.beforeWatch = f }

// Etcd exposes the underlying etcd client for tests that write behind the
// datastore's back.
func Etcd(c *Client) any { return c.etcd }

// Encode is the JSON the datastore stores for obj.
var Encode = encode
