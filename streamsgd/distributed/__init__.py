"""Scale-out: N replicas holding one model and taking synchronous data-parallel steps
(docs/design.md#scaling-out). The replicas run the training loop of a single process
(:class:`~streamsgd.training.trainer.Trainer`, built by :func:`.replicated.replicated_trainer`)
with the collective stepper (:mod:`.collective_stepper`: share, pack, allreduce, apply), whose
parts are the membership (:mod:`.membership`: start, recovery, partitions by rank), the
checkpoint's writer (:mod:`.writer`: the lock after a takeover, generations, a manifest
started over) and the agreement checks (:mod:`.agreement`: digests of θ, a grown
partition list). Below them: the :class:`~.collective.Collective` port and its one-member
local collective (:mod:`.collective`), the MPI adapter (:mod:`.mpi`), partitions by rank
(:mod:`.partitions`), the step's exchange vector (:mod:`.exchange`), the step manifest and its
replay (:mod:`.step_manifest`, the entries every replica holds in :mod:`.held_manifest`)."""
