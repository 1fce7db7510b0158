package daemon

import "context"

// sweep is filled in by the periodic check.
func (d *Daemon) sweep(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
