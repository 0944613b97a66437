"""The training loop and what it is written against. :mod:`.trainer` holds the loop
(:class:`~.trainer.Trainer`), composed of an intake (:mod:`.intake`: poll, decode, buffer, dead
letters), a stepper (the port in :mod:`.stepper`; :mod:`.local_stepper` calls the model
directly) and a checkpointer (:mod:`.checkpointer`: checkpoint, then commit). Beside them: the
ports (:mod:`.ports`: source, checkpoint store, dead-letter sink, sensor), the minibatch buffer
with exact positions (:mod:`.buffer`), the totals kept in the checkpoint (:mod:`.totals`), the
loop's settings (:mod:`.settings`) and progressive evaluation (:mod:`.evaluation`). No adapter
is imported here: the CLI composes them."""
