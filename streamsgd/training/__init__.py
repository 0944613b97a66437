"""The training loop and what it is written against: the ports (:mod:`.ports`: source,
checkpoint store, dead-letter sink, sensor), the minibatch buffer with exact positions
(:mod:`.buffer`), the totals kept in the checkpoint (:mod:`.totals`), the trainer itself
(:mod:`.trainer`, its settings in :mod:`.settings`) and progressive evaluation
(:mod:`.evaluation`). No adapter is imported here: the CLI composes them."""
