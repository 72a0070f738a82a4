package migrate

import "errors"

// ErrProtocol is a page-server protocol violation (the wire format is internal/pageproto).
var ErrProtocol = errors.New("migrate: page-server protocol error")
