FROM python:3.12-slim
WORKDIR /srv
COPY . .
RUN pip install --no-cache-dir '.[postgres,metrics]'
# The sample (samples/) is not part of the wheel: it runs from /srv, as from a clone.
ENV PYTHONPATH=/srv
USER nobody
ENTRYPOINT []
CMD ["eventkit", "--help"]
