"""Scale-out: N replicas holding one model and taking synchronous data-parallel steps
(docs/design.md, Scaling out). The :class:`~.collective.Collective` port and its one-member
local collective (:mod:`.collective`), the MPI adapter (:mod:`.mpi`), partitions by rank
(:mod:`.partitions`), the step's exchange vector (:mod:`.exchange`), the step manifest and its
replay (:mod:`.step_manifest`, the entries every replica holds in :mod:`.held_manifest`), the
replicas' agreement checks (:mod:`.agreement`) and the replicated loop (:mod:`.replicated`)."""
