package inspect

// SetChunkSize sets the search window for a test and returns the function that restores it.
func SetChunkSize(n uint64) func() {
	old := chunkSize
	chunkSize = n
	return func() { chunkSize = old }
}
