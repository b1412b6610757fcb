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
            code("data/synthetic.py"),
        output:
            directory(ROOT),
        params:
            settings=settings("data.root", "data.synthetic"),
        log:
            "logs/make_synthetic_voc.log",
        shell:
            "ppcseg make-synthetic-voc {PARAMS_ARGS} --out {output} --log {log}"

    rule pretrain_backbone:
        input:
            code("models/pretrain.py", "models/backbones.py"),
            data=ROOT,
        output:
            "data/weights/tiny.pth",
        params:
            settings=settings("seed", "pretrain", "cam.backbone", "cam.resize_long", "cam.crop_size"),
        threads: 2
        resources:
            gpu=1,
            mem_mb=2000,
            runtime=30,
        log:
            "logs/pretrain_backbone.log",
        shell:
            "ppcseg pretrain-backbone {PARAMS_ARGS} --threads {threads} --data {input.data} --out {output} "
            "--log {log}"

else:

    rule prepare_voc:
        input:
            code("data/prepare.py", "data/sbd.py", "data/extract.py"),
            voc=DOWNLOADS["voc"],
            sbd=DOWNLOADS["sbd"],
        output:
            directory(ROOT),
        params:
            settings=settings("data.root", "data.sources.voc", "data.sources.sbd"),
        log:
            "logs/prepare_voc.log",
        shell:
            "ppcseg prepare-voc {PARAMS_ARGS} --voc-archive {input.voc} --sbd-archive {input.sbd} "
            "--out {output} --expect-full --log {log}"

    rule prepare_saliency:
        input:
            code("data/extract.py"),
            archive=DOWNLOADS["saliency"],
        output:
            directory(SALIENCY),
        params:
            settings=settings("data.sources.saliency"),
        log:
            "logs/prepare_saliency.log",
        shell:
            "ppcseg prepare-saliency {PARAMS_ARGS} --archive {input.archive} --out {output} --log {log}"


for _source, _path in DOWNLOADS.items():

    rule:
        name:
            f"download_{_source}"
        localrule: True
        input:
            code("data/download.py"),
        output:
            _path,
        params:
            source=_source,
            settings=settings(f"data.sources.{_source}"),
        log:
            f"logs/download_{_source}.log",
        shell:
            "ppcseg download {PARAMS_ARGS} --source {params.source} --out {output} --log {log}"
