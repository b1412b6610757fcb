# Data: the generated demo dataset, or VOC 2012 + SBD downloads prepared into one VOC layout; pretrained weights.

DOWNLOADS = {
    "voc": "data/downloads/VOCtrainval_11-May-2012.tar",
    "sbd": "data/downloads/benchmark.tgz",
    "resnet38": "data/weights/resnet38.params",
    "resnet101": "data/weights/resnet101.pth",
    "saliency": "data/downloads/saliency.zip",
}


if SYNTHETIC:

    rule make_synthetic_voc:
        input:
            **stage_inputs("make-synthetic-voc", reads_data=False),
        output:
            root=directory(ROOT),
            manifest=MANIFEST,
        log:
            "logs/make_synthetic_voc.log",
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            settings=settings("make-synthetic-voc"),
        shell:
            "ppcseg make-synthetic-voc {params.params_files} --out {output.root:q} --log-file {log:q}"

else:

    rule prepare_voc:
        input:
            **stage_inputs("prepare-voc", reads_data=False),
            voc=DOWNLOADS["voc"],
            sbd=DOWNLOADS["sbd"],
        output:
            root=directory(ROOT),
            manifest=MANIFEST,
        log:
            "logs/prepare_voc.log",
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            settings=settings("prepare-voc"),
        shell:
            "ppcseg prepare-voc {params.params_files} --voc-archive {input.voc:q} --sbd-archive {input.sbd:q} "
            "--out {output.root:q} --log-file {log:q}"

    rule prepare_saliency:
        input:
            **stage_inputs("prepare-saliency", reads_data=False),
            archive=DOWNLOADS["saliency"],
        output:
            directory(SALIENCY),
        log:
            "logs/prepare_saliency.log",
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            settings=settings("prepare-saliency"),
        shell:
            "ppcseg prepare-saliency {params.params_files} --archive {input.archive:q} --out {output:q} --log-file {log:q}"


# sources.lock.yaml (git-tracked) holds the SHA-256 that the first download of a source without a published one
# recorded; the stage reads it and may add its own entry. It is deliberately neither an input nor an output: one
# download adding its entry would otherwise make every other download stale (Snakemake compares mtimes, DVC hashes).
# The stage enforces the record itself, so a changed entry fails the next download instead of re-running it.
for _source, _path in DOWNLOADS.items():

    rule:
        name:
            f"download_{_source}"
        input:
            **stage_inputs("download", reads_data=False),
        output:
            _path,
        log:
            f"logs/download_{_source}.log",
        localrule: True
        conda:
            "../../envs/ppcseg.yaml"
        params:
            params_files=params_args,
            source=_source,
            settings=settings("download", key=f"data.sources.{_source}"),
        shell:
            "ppcseg download {params.params_files} --source {params.source} --out {output:q} "
            "--lock-file sources.lock.yaml --log-file {log:q}"
