# genmem on a CUDA PyTorch base image: docker build -t genmem . && docker run --gpus all genmem
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
WORKDIR /opt/genmem
COPY setup.cfg pyproject.toml README.md ./
COPY genmem ./genmem
# torch comes from the base image; pip keeps it because setup.cfg asks for a range it satisfies
RUN pip install --no-cache-dir . && genmem --help
ENTRYPOINT ["genmem"]
CMD ["--help"]
