"""Ray Data batch jobs: plan shards, rerank them in actor pools, store the outputs resumably."""
