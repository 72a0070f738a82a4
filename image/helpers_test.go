package image

import (
	"testing"

	"github.com/criukit/criukit/internal/testenv"
)

func testenvShort(t *testing.T) {
	t.Helper()
	testenv.Short(t)
	testenv.Root(t)
}
