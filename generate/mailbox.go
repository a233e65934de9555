package generate

import (
	"context"
	"sync"
)

// mailbox carries one generation's events from the scheduler's loop to the
// channel its reader holds, without ever blocking the loop on a slow
// reader and without a channel buffer sized by the token budget (which,
// for a request on a file claiming a context of 2^31, would be a
// 100-gigabyte allocation): events wait in a slice, as many as the
// sequence has produced and the reader not yet taken, and a pump
// goroutine hands them on. The pump closes out after the Done event, or
// when the request's context ends (then no more events come).
type mailbox struct {
	mu     sync.Mutex
	events []Event
	wake   chan struct{}
	out    chan Event
	stop   chan struct{}
	once   sync.Once
}

// mailboxBuffer is the reader's channel buffer: the events the reader can
// take at once without waiting on the pump.
const mailboxBuffer = 64

func newMailbox(ctx context.Context) *mailbox {
	b := &mailbox{wake: make(chan struct{}, 1), out: make(chan Event, mailboxBuffer), stop: make(chan struct{})}
	go b.pump(ctx)
	return b
}

// send queues ev for the reader; it never blocks.
func (b *mailbox) send(ev Event) {
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// abandon stops the pump of a mailbox whose job never started.
func (b *mailbox) abandon() { b.once.Do(func() { close(b.stop) }) }

func (b *mailbox) pump(ctx context.Context) {
	defer close(b.out)
	for {
		b.mu.Lock()
		evs := b.events
		b.events = nil
		b.mu.Unlock()
		for _, ev := range evs {
			select {
			case b.out <- ev:
			case <-ctx.Done():
				return
			case <-b.stop:
				return
			}
			if ev.Done {
				return
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-b.wake:
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		}
	}
}
