FROM python:3.12-slim
WORKDIR /srv
COPY . .
RUN pip install --no-cache-dir '.[postgres]'
USER nobody
ENTRYPOINT []
CMD ["eventkit", "--help"]
