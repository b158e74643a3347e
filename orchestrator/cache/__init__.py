"""The teacher cache: teacher signals computed once per (teacher, task, signal set) and shared by every trial.

``key.py`` (the request, its content key, sizes before building), ``build.py`` (one teacher pass, in shards),
``serve.py`` (verify, memory-map or object store, ``CachedTeacher``).

Build: one batched eval-mode pass of the fine-tuned teacher over train, validation and test, spread over Ray tasks
(one per chunk of samples, each on a GPU when the cluster has them) or run in-process. Each chunk becomes a
*shard*: one ``.npy`` file per field, checksummed (sha256) in the cache's ``manifest.json``.

Key: content-addressed by the teacher's weight/config/tokenizer files, the data fingerprint, the teacher's max
length, the signal set, the storage dtype and the precomputed relation sets, so a resumed study, another trial or
another study finds the signals instead of recomputing them.

Fields per split (``n`` samples, ``T`` teacher tokens in all, ``C`` classes, ``H`` teacher width):
- ``logits`` [n, C] float32 (also the teacher's predictions, kept for the behaviour analysis);
- ``cls.<l>`` [n, H] per requested layer;
- ``tokens.<l>`` [T, H] per requested layer, ragged: ``offsets`` [n + 1] marks each sample's rows;
- ``ckd.band`` [T, L, 4w+1] and ``ckd.layer_gram`` [T, L, L] (float32): CKD's teacher side as Gram numbers over the
  union L of the teacher layers any CKD student maps to. Every student's word and layer relations follow from
  them by a few elementwise operations at serve time, at 4w+1+L numbers per token and layer instead of H; a cached
  CKD step computes only the student side (ragged like tokens).

Serve: ``CachedTeacher.signals(split, indices, spec)`` returns exactly the rows of ``indices``, in their order, so
any shuffling and batch size pairs every sample with its own signals. The cache is either loaded into the Ray
object store (when it fits a configurable share of it; trials read it zero-copy) or memory-mapped from the shards.
"""
