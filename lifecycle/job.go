package lifecycle

import (
	"context"

	"github.com/sentinel-paas/sentinel/rollout"
	"github.com/sentinel-paas/sentinel/source"
)

// Job is what one kind of run does differently from the others: how its
// plan is made and carried out, and what it says. The phases are the same
// for every job.
type Job struct {
	Kind string // "upgrade", "download-only", "patch-install", ...
	// Target is the release asked for ("" for the newest, or none).
	Target string
	// DownloadOnly: the job fills the cache node and changes no node; it
	// takes no run lock and runs no self-update.
	DownloadOnly bool
	// NeedsCache is said when a download-only job has no --cache-ip.
	NeedsCache string
	// SkipPreflight: the job checks nothing on the nodes first.
	SkipPreflight bool
	// Fill is the command that fills the cache node for this job.
	Fill string
	// Advice words the commands a failed or interrupted run advises.
	Advice rollout.Advice

	// Plan makes the plan from the channel and the nodes' facts.
	Plan func(context.Context, *Run) (*rollout.Plan, error)
	// DryRun shows what --dry-run shows (nil: the plan).
	DryRun func(*Run) error
	// NothingToDo says so, when the plan changes nothing.
	NothingToDo func(*Run) error
	// Stage runs after preflight, before the confirmation.
	Stage func(context.Context, *Run) error
	// Question asks for confirmation: the question, and what to say when
	// nobody can answer. Nil: the job asks nothing.
	Question func(*Run) (question, refusal string)
	// Execute carries the plan out (nil: the journaled executor).
	Execute func(context.Context, *Run) error
	// Started is said once the journaled run has started.
	Started func(*Run)
	// Finished says how the run ended and returns its error.
	Finished func(*Run, error) error

	// Resumable refuses to resume last (nil: there is none) with this job.
	Resumable func(r *Run, last *rollout.Run) error
	// Unfinished says what to do about an unfinished run that stops a new one.
	Unfinished func(last *rollout.Run) string
	// Done says what a finished run achieved ("the cluster is on 3.4.2").
	Done func(last *rollout.Run) string
	// Summary names what a plan does ("3.4.1 -> 3.4.2").
	Summary func(*rollout.Plan) string
	// ResumeSource says where a resumed run takes its artifacts ("" says nothing).
	ResumeSource func(source.Fetch) string
}
