"""`cutover bench`: the loader and extractor against their reference points, in one run."""
